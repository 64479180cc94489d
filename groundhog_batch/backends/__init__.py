"""Where tasks run: the narrow contract (base) and its implementations."""
