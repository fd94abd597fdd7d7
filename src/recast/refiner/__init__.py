"""The input refiner p_im of "Recast your input" (§3): latent tokens, ξ bias, CMA-ES, training."""
