"""Evaluation: test sets, scoring, reports, baselines, the listening report, chains, speed."""
