"""Code snippets the tests upload."""

FIB = '''def fibonacci(n):
    """Return the n-th Fibonacci number, iteratively."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
'''
