"""A job's results back to its customer, end to end encrypted: live logs in signed, hash-chained
chunks, and output files in an encrypted archive, both readable by the customer's wallet key
alone. The API and the object store hold ciphertext only.

- `keys`: the customer's public key from their `requestJob` transaction; ECIES key wrapping.
- `logchain`: log records, sealed into chunks by the placed provider and checked by anyone.
- `archive`: outputs packed (tar, zstd), encrypted in segments, unpacked safely.
- `digest`: the result digest the completion commits on chain.
- `grant`: signed, expiring, deployment-bound requests to the API.
"""
