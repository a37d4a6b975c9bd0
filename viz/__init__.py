"""Pictures and plots: slot grids, latent traversals, slot-sweep and study plots (matplotlib, headless)."""
