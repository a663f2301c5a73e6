export { connectDocker, DockerUnavailableError } from './client.js'
export { ensureImage, ImageBuildError, IMAGE_KINDS, IMAGE_REPO, RUN_AS, type ImageKind, type RuntimeImage } from './images.js'
