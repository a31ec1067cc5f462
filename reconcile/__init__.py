"""reconcile: prove that HaloPSA bills exactly what Autotask billed, line by line."""

__version__ = "0.1.0"
