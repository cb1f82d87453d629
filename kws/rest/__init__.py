"""Big/Little over REST: the Big service (CherryPy), the client the Pi uses, and the service's metrics."""
