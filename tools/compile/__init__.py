"""Building solutions without running them, and reading what the compilers said about them."""
