"""Load generators and servers that run inside the layout's hosts."""
