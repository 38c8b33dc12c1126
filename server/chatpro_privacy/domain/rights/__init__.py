"""Data-subject rights requests and how each right is carried out (RGT-)."""
