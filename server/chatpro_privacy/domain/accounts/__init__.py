"""Accounts: registration, profile, devices, sessions, guardians, roles, provisioning (ACC-)."""
