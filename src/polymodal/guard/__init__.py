"""Security checks for vision-language inputs and outputs (see rules.py and attacks.py)."""
