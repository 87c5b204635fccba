"""Mesh data: built-in FEM generators and mesh folders -> graphs -> datasets."""
