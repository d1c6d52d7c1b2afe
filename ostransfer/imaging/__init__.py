"""Images: loading and saving with Pillow, resizing, Laplacian pyramids, region guides,
colour preservation and labelled grids."""
