export { connectDocker, DockerUnavailableError } from './client.js'
export { ensureImage, imageProblem, IMAGE_KINDS, IMAGE_REPO, RUN_AS, ImageBuildError, type ImageKind, type RuntimeImage } from './images.js'
export { buildRuntimeImage, containerOptions, DockerRuntime, OWNER_LABEL, reapContainers, type ContainerPlan, type DockerRuntimeInit } from './runtime.js'
