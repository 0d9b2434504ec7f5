"""Small deterministic corpora in the real on-disk layouts (CASME II, LLP), with their truth beside them."""
