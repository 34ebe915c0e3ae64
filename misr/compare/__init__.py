"""`misr compare`: models trained on the same store(s), chosen on valid, tested once, compared with intervals.

contenders   what can be compared: this package's models, MMSA's (mmsa)
comparison   training (or reusing) every seed, then reading test once
statistics   paired differences and their bootstrap intervals
report       the numbers, a Markdown table and a picture
"""
