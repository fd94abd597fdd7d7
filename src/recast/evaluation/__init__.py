"""Evaluation like the paper's Tables 2-3: a pairwise judge, a Bradley-Terry reward model,
Best-of-N, and bootstrap intervals on win / loss / tie rates."""
