"""The peer side: sender and receiver over a relay connection.

Chunking, end-to-end flow control (a credit window of unacknowledged bytes),
hashing, and safe writes (hidden partial file, verify, then rename).
"""
