# maillab on JupyterHub, one machine: a login and a container per student.
#
#   pip install jupyterhub dockerspawner jupyterhub-nativeauthenticator
#   npm install configurable-http-proxy        # or: conda/Debian, see docs/classroom.md
#   docker build -t maillab-singleuser -f deploy/jupyterhub/Dockerfile dist/
#   jupyterhub -f deploy/jupyterhub/jupyterhub_config.py
#
# Each student gets their own container from the single-user image
# (Dockerfile beside this file): their own notebooks, progress file and
# running labs. maillab's local backend needs no root and uses only the
# container's loopback, so the containers need no privileges and no network
# but the hub's. Limits come from bench/bench_capacity.py (docs/classroom.md
# gives the figures and how to re-measure on your machine).
#
# Environment (all optional):
#   MAILLAB_IMAGE       the single-user image (default maillab-singleuser:latest)
#   MAILLAB_MEM_LIMIT   per-student memory limit (default 1G)
#   MAILLAB_CPU_LIMIT   per-student CPU limit, in cores (default 1.0)
#   MAILLAB_HUB_ADMINS  comma-separated instructor logins (admins)

import os

c = get_config()  # noqa: F821 (JupyterHub defines it when it loads this file)

# -- where it listens ------------------------------------------------------------------
# Put TLS in front (a reverse proxy such as Caddy or nginx, or
# c.JupyterHub.ssl_cert/ssl_key): students type passwords here.
c.JupyterHub.bind_url = os.environ.get("MAILLAB_HUB_URL", "http://:8000")
# The hub must be reachable from the containers (the Docker bridge).
c.JupyterHub.hub_ip = "0.0.0.0"

# -- who logs in ----------------------------------------------------------------------------
# NativeAuthenticator: students sign up, an instructor approves them at
# /hub/authorize. Any JupyterHub authenticator works (GitHub, LTI from the
# LMS, the university's OAuth...).
c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
c.Authenticator.admin_users = {
    name.strip() for name in os.environ.get("MAILLAB_HUB_ADMINS", "").split(",") if name.strip()
}
c.Authenticator.allow_all = True  # every approved sign-up may log in

# -- one container per student ------------------------------------------------------------
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = os.environ.get("MAILLAB_IMAGE", "maillab-singleuser:latest")
c.DockerSpawner.remove = True  # the container goes; the student's volume stays
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
c.DockerSpawner.volumes = {"maillab-{username}": "/home/jovyan/work"}
c.DockerSpawner.network_name = os.environ.get("MAILLAB_DOCKER_NETWORK", "bridge")

# Per-student limits (bench_capacity: a student's notebook server, kernel
# with a running lab and the TUI in a terminal stay under ~0.4 GiB; a check
# of every lab peaks lower): the limit leaves room for a second lab and a
# browser-served TUI, the guarantee is what an active student uses.
c.Spawner.mem_limit = os.environ.get("MAILLAB_MEM_LIMIT", "1G")
c.Spawner.mem_guarantee = "384M"
c.Spawner.cpu_limit = float(os.environ.get("MAILLAB_CPU_LIMIT", "1.0"))
c.Spawner.cpu_guarantee = 0.05

# Open on the notebooks; the TUI is `maillab` in a JupyterLab terminal.
c.Spawner.default_url = "/lab/tree/notebooks/README.md"
# Progress lives in the student's volume, so it survives a restart of the
# container (sim.lab.progress reads MAILLAB_HOME).
c.Spawner.environment = {"MAILLAB_HOME": "/home/jovyan/work/.maillab"}

# A class is started at once: give a loaded machine time.
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120

# -- idle servers -----------------------------------------------------------------------------
# Stop servers idle for an hour (jupyterhub-idle-culler): their labs stop
# with them; progress is saved after every step.
c.JupyterHub.load_roles = [
    {
        "name": "jupyterhub-idle-culler-role",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["jupyterhub-idle-culler-service"],
    }
]
c.JupyterHub.services = [
    {
        "name": "jupyterhub-idle-culler-service",
        "command": ["python3", "-m", "jupyterhub_idle_culler", "--timeout=3600"],
    }
]
