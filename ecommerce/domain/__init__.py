"""Pure domain rules: events and their schema versions, users, orders, stock, payments, sagas.

Nothing in this package performs I/O or imports the rest of labkit.
"""
