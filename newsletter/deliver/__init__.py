"""Deliver stage: subscribers, the ledger, message assembly, transports, and the sender that uses them."""
