"""Private implementation of tensorguard_ray; import the public names from tensorguard_ray."""
