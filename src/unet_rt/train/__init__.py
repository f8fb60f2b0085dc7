"""Reference PyTorch trainer for unet-rt, faithful to Ronneberger et al. (2015)."""
