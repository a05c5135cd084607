"""Feature extractors (pretrained backbones, autoencoder, raw pixels) and reducers."""
