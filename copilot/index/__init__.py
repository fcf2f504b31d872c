"""The local index: folders of saved pages, chunked, embedded and stored in Chroma."""
