# The Cairn server image: compiled JavaScript, a non-root user, workflows from
# /app/overlay/org/workflows (mount or COPY an overlay there) and any other WORKFLOW_DIRS.
#   docker build -t cairn .
#   docker run -p 8080:8080 -e DATABASE_URL=postgres://... -v $PWD/workflows:/app/overlay/org/workflows:ro cairn
# NODE_IMAGE exists so that a build without a registry can pass a local stand-in base.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY sdk/package.json sdk/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs scripts/
COPY sdk sdk
COPY server server
COPY cli cli
RUN node scripts/build.mjs \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/@cairnjs

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    WORKFLOW_DIRS=/app/overlay/org/workflows \
    CAIRN_DATA_DIR=/data
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY cli/cairn.mjs cli/cairn.mjs
# The embedded store (no DATABASE_URL) keeps its data in /data; production sets DATABASE_URL.
RUN mkdir -p /app/overlay/org/workflows /data && chown node:node /data \
 && ln -s /app/cli/cairn.mjs /usr/local/bin/cairn
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["node", "dist/server/healthcheck.js"]
CMD ["node", "dist/server/main.js"]
