"""Reference data files shipped with Maillage (territorial divisions)."""
