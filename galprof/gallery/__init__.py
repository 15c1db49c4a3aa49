"""Reading a gallery: which files are media (walk), what they say (metadata), what they show (frames)."""
