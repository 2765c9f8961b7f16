"""Data: the synthetic phantom engine, real-layout readers (MSD, BTCV), datalists and input checks."""
