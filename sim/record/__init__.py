"""What runs record and how it is written: counters and events (metrics), the declared
column types, atomic writes and manifests.  A leaf: imports nothing else of sim."""
