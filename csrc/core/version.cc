namespace unet_rt {
const char* version() { return "0.1.0"; }
}  // namespace unet_rt
