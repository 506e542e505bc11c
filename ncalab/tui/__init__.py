"""The ncalab terminal lab (Textual): explore automata live, browse runs."""
