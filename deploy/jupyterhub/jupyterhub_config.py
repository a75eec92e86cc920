# maillab on JupyterHub, one machine: a login and a container per student.
#
#   pip install jupyterhub dockerspawner jupyterhub-nativeauthenticator jupyterhub-idle-culler
#   npm install configurable-http-proxy        # or: conda/Debian, see docs/classroom.md
#   python -m build --wheel            # dist/maillab-*.whl (labs and topologies inside)
#   docker build -t maillab-singleuser -f deploy/jupyterhub/Dockerfile .
#   jupyterhub -f deploy/jupyterhub/jupyterhub_config.py
#
# Each student gets their own container from the single-user image
# (Dockerfile beside this file): their own notebooks, progress file and
# running labs. maillab's local backend needs no root and uses only the
# container's loopback, so the containers need no privileges and no network
# but the hub's (see MAILLAB_DOCKER_NETWORK). Limits come from bench/bench_capacity.py (docs/classroom.md
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
try:  # its sign-up and approval pages
    import nativeauthenticator

    templates = os.path.join(os.path.dirname(nativeauthenticator.__file__), "templates")
    c.JupyterHub.template_paths = [templates]
except ImportError:  # checked elsewhere (tests load this file without it)
    pass
c.Authenticator.admin_users = {
    name.strip() for name in os.environ.get("MAILLAB_HUB_ADMINS", "").split(",") if name.strip()
}
c.Authenticator.allow_all = True  # every approved sign-up may log in

# -- one container per student ------------------------------------------------------------
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = os.environ.get("MAILLAB_IMAGE", "maillab-singleuser:latest")
c.DockerSpawner.remove = True  # the container goes; the student's volume stays
# The student's home is a volume: notebooks (copied in at first start),
# progress (~/.local/share/maillab) and their own files survive restarts.
c.DockerSpawner.notebook_dir = "/home/jovyan"
c.DockerSpawner.volumes = {"maillab-{username}": "/home/jovyan"}
c.DockerSpawner.network_name = os.environ.get("MAILLAB_DOCKER_NETWORK", "bridge")

# Per-student limits, from bench/bench_capacity.py and tests/test_classroom.py
# (docs/classroom.md): a student's notebook server (~120 MiB) with a kernel
# running a lab (~90 MiB peak) and the TUI in a terminal (~95 MiB) uses about
# 0.3 GiB; the guarantee covers that, the limit leaves room for a second
# kernel and a `maillab check` (~80 MiB peak) at once. CPU: idle labs use
# ~0.5% of a core and an experiment 0.1-0.3 s; starting a lab is a burst of
# a few CPU-seconds, hence a full core as the limit.
c.Spawner.mem_limit = os.environ.get("MAILLAB_MEM_LIMIT", "1G")
c.Spawner.cpu_limit = float(os.environ.get("MAILLAB_CPU_LIMIT", "1.0"))
# Guarantees are a scheduler's business (Kubernetes: config.yaml); Docker
# enforces only the limits. Size the machine by them instead: 384M and 0.05
# of a core a student (docs/classroom.md).
c.Spawner.mem_guarantee = "384M"
c.Spawner.cpu_guarantee = 0.05

# Open on the notebooks' index; the TUI is `maillab` in a JupyterLab terminal.
c.Spawner.default_url = "/lab/tree/notebooks/README.md"

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
