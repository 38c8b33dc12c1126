"""What every capability stands on.

Typed errors, field rules, principals, paging, tokens, throttles, passwords, due dates, text rules.
"""
