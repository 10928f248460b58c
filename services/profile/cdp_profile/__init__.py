"""Profile service: the live 360° profile."""
