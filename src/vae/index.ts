/**
 * Latent video diffusion (REFERENCE_SPEC §5.11): the SDXL VAE (`AutoencoderKL`) on flexvid's
 * engine, loading of the published weights, chunked encode/decode with the 0.13025 scaling, the
 * decoded-ground-truth cache of FVD (§8.2) and the frame encoder of `flexvid data from-video --latent`.
 * See docs/latent.md.
 */
export { AutoencoderKL, Encoder, Decoder, ResnetBlock2D, VaeAttention, MidBlock, posteriorOf, samplePosterior, type Posterior, type VaeInit, type VaePlacement } from './autoencoder-kl.ts';
export { SDXL_VAE_CONFIG, SDXL_SCALING_FACTOR, TINY_VAE_CONFIG, downFactor, validateVaeConfig, configFromDiffusers, configToDiffusers, type AutoencoderKLConfig } from './config.ts';
export { detectVaeLayout, ldmToDiffusersName, toDiffusersNames, inferVaeConfig, type VaeWeightLayout } from './diffusers-names.ts';
export {
  loadVae,
  saveVae,
  resolveVaePath,
  resolveVaeDtype,
  vaeDtypeSupported,
  vaeSource,
  encodeFrames,
  decodeLatents,
  decodedToUint8,
  VaeWeightsMissingError,
  VAE_ENV,
  VAE_DOWNLOAD_URL,
  VAE_WEIGHT_FILE,
  VAE_CONFIG_METADATA_KEY,
  type LoadVaeOptions,
  type EncodeOptions,
  type DecodeOptions,
  type FrameProgress,
  type VaeSource,
} from './latent-space.ts';
export { decodedCache, decodedCacheKey, decodedCachePath, DEFAULT_DECODE_CACHE_DIR, type DecodedVideo, type DecodedCacheOptions } from './decoded-cache.ts';
export { vaeFrameEncoder, rgb24ToUnit, type VaeFrameEncoderOptions } from './frame-encoder.ts';
