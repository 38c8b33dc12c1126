"""What every capability stands on.

Typed errors, field rules, principals, paging, tokens, throttles, passwords, due dates, text rules,
and the vocabulary of stored states and roles that several capabilities share.
"""
