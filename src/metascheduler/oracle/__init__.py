"""The oracle service: ingests the chain into the store, places pending jobs, keeps the books.

A thin service over the libraries (chain, store, placement): every decision derives from chain
state plus the store, so a restarted oracle continues where the last one stopped.
"""
