"""Kubernetes Pod Security Standards, levels baseline and restricted, as checks over pod specs.

The rules are the public "Pod Security Standards" page of kubernetes.io (the policy the Pod Security
admission controller enforces); restated here, not copied, for the fields a pod spec can carry:

baseline: no hostProcess, host namespaces (network, PID, IPC), privileged containers, hostPath
volumes, host ports, added capabilities beyond the default set, AppArmor profiles other than
runtime/default or localhost, SELinux types other than the container ones (and no user or role),
/proc mounts other than Default, seccomp Unconfined, sysctls outside the safe set.
restricted, in addition: volumes only of the listed types; allowPrivilegeEscalation false on every
container; runAsNonRoot true (the pod's, or every container's); runAsUser not 0; seccomp
RuntimeDefault or Localhost (the pod's, or every container's); capabilities drop ALL, and only
NET_BIND_SERVICE may be added.

Every check covers containers, initContainers and ephemeralContainers.
"""

from __future__ import annotations

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _containers(pod: dict) -> list[tuple[str, dict]]:
    return [
        (f"{kind}[{c.get('name', i)}]", c)
        for kind in ("containers", "initContainers", "ephemeralContainers")
        for i, c in enumerate(pod.get(kind) or [])
    ]


def baseline(pod: dict) -> list[str]:
    out = []
    psc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            out.append(f"spec.{field} is true")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("spec.securityContext.windowsOptions.hostProcess is true")
    for v in pod.get("volumes") or []:
        if "hostPath" in v:
            out.append(f"volume {v.get('name')}: hostPath")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    contexts = [("spec.securityContext", psc)]
    for where, c in _containers(pod):
        sc = c.get("securityContext") or {}
        contexts.append((where, sc))
        if sc.get("privileged"):
            out.append(f"{where}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{where}: hostProcess")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            out.append(f"{where}: adds capabilities {sorted(added - BASELINE_CAPABILITIES)}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{where}: hostPort {port['hostPort']}")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"{where}: procMount {sc['procMount']}")
    for where, sc in contexts:
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"{where}: seccomp Unconfined")
        if (sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            out.append(f"{where}: AppArmor profile {sc['appArmorProfile']['type']}")
        se = sc.get("seLinuxOptions") or {}
        if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            out.append(f"{where}: SELinux options {se}")
    return out


def restricted(pod: dict) -> list[str]:
    """Every baseline and restricted rule `pod` (a pod spec) breaks."""
    out = baseline(pod)
    psc = pod.get("securityContext") or {}
    for v in pod.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volume {v.get('name')}: type {sorted(kinds - RESTRICTED_VOLUMES)} is not allowed")
    if psc.get("runAsUser") == 0:
        out.append("spec.securityContext.runAsUser is 0")
    for where, c in _containers(pod):
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation is not false")
        if not (
            sc.get("runAsNonRoot") is True
            or (psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)
        ):
            out.append(f"{where}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            out.append(f"{where}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{where}: seccompProfile is not RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{where}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{where}: adds capabilities other than NET_BIND_SERVICE")
    return out


def pod_specs(obj) -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod template in a rendered object (RayCluster groups, a RayJob's
    cluster and submitter, Deployments, ...)."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                found.append((path, node))
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(obj, f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}")
    return found
