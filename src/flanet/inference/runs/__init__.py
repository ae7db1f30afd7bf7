"""Runs of ``flanet predict``: video sources, outputs, measurements, archives, live capture, annotation export."""
