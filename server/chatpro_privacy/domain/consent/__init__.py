"""The policy, the consent ledger, purposes, receipts, disclosures, restrictions.

CON-1 to CON-7, SEC-1, SEC-2.
"""
