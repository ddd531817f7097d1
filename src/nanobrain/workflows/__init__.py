"""Ready-made workflows built from ordinary NanoBrain steps."""
