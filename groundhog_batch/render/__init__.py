"""Turning planned calls into the bash script a task runs."""
