"""Feature families: SAE features that are parts of one concept, grouped after training
(rule.py), and each family's activation per study (activation.py), from which its cohort
is built like a feature's."""
