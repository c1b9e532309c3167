"""Customer lifetime value: BG/NBD, Gamma-Gamma, RFM."""
