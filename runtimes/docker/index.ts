export { connectDocker, DockerUnavailableError } from './client.js'
export { ensureImage, imageProblem, IMAGE_KINDS, IMAGE_REPO, RUN_AS, ImageBuildError, type ImageKind, type RuntimeImage } from './images.js'
export { buildRuntimeImage, DockerRuntime, OWNER_LABEL, type DockerRuntimeInit } from './runtime.js'
