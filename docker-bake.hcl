# docker buildx bake: the edge-ocr image for linux/amd64 and linux/arm64 from Dockerfile.arm64.
#
#   docker buildx bake --print                       # the resolved build (no engine needed)
#   docker buildx bake                               # build both platforms (cache only)
#   IMAGE=ghcr.io/acme/edge-ocr TAG=$(git rev-parse HEAD) docker buildx bake --push
#   docker buildx bake image-local                   # this machine's platform, loaded into docker
#
# In GitHub Actions (.github/workflows/image.yml) CACHE=gha keeps the layer cache in the Actions cache.

variable "IMAGE" {
  default = "edge-ocr"
}

# Space-separated tags; each becomes IMAGE:tag. The image workflow passes the commit SHA.
variable "TAG" {
  default = "dev"
}

# The package version, as a label (the image workflow passes it; docker inspect shows it).
variable "VERSION" {
  default = ""
}

# "gha": the GitHub Actions cache (only inside a workflow); "": no external cache.
variable "CACHE" {
  default = ""
}

variable "CACHE_SCOPE" {
  default = "edge-ocr"
}

group "default" {
  targets = ["image"]
}

target "_common" {
  context    = "."
  dockerfile = "Dockerfile.arm64"
  target     = "runtime"
  labels = {
    "org.opencontainers.image.version" = VERSION
  }
  # mode=max also caches the intermediate stages (the models stage above all: the wheel download and
  # the quantization are the slow part; they are redone only when edge_ocr/ or models/ change).
  cache-from = CACHE == "gha" ? ["type=gha,scope=${CACHE_SCOPE}"] : []
  cache-to   = CACHE == "gha" ? ["type=gha,scope=${CACHE_SCOPE},mode=max"] : []
}

target "image" {
  inherits  = ["_common"]
  platforms = ["linux/amd64", "linux/arm64"]
  tags      = [for t in split(" ", TAG) : "${IMAGE}:${t}" if t != ""]
}

# This machine's platform only, loaded into the local docker engine: trying the image out, and the
# image workflow's smoke test (it reuses the layers that target "image" cached for linux/amd64).
target "image-local" {
  inherits = ["_common"]
  tags     = ["${IMAGE}:${TAG}"]
  output   = ["type=docker"]
  cache-to = [] # read the cache only: writing one platform's index would evict the other's layers
}
