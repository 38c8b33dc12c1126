"""ChatPro privacy service: makes the ChatPro privacy policy true, enforced and provable."""

__version__ = "0.1.0"
