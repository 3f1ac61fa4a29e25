"""Contrastive training of dual encoders (CLIP and SigLIP objectives), on one process or many."""
