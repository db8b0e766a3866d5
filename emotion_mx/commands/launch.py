"""Start a dist_sync job: scheduler + servers + workers, locally or on hosts over ssh.

    python tools/launch.py -n 2 -s 1 -- python tools/train.py --config ... --kvstore dist_sync

Every process gets DMLC_ROLE, DMLC_PS_ROOT_URI, DMLC_PS_ROOT_PORT, DMLC_NUM_SERVER and
DMLC_NUM_WORKER.  All processes are killed when a worker fails, on --timeout and on Ctrl-C.
"""
import sys

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-n", "--num-workers", required=True, type=int, help="Number of workers.")
@click.option("-s", "--num-servers", default=1, show_default=True, type=int, help="Number of servers.")
@click.option("-H", "--hostfile", type=click.Path(), help="Hosts (one per line) for ssh; default: all local.")
@click.option("--port", type=int, help="Scheduler port (default: a free one).")
@click.option("--host-ip", help="Address of this machine as seen by the hosts (ssh mode).")
@click.option("--timeout", type=float, help="Kill everything after this many seconds.")
@click.option("--no-host-key-check", is_flag=True,
              help="ssh: accept unknown or changed host keys (StrictHostKeyChecking=no). Default: check them.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def main(num_workers, num_servers, hostfile, port, host_ip, timeout, no_host_key_check, command):
    from emotion_mx.training.distributed import launch, read_hosts
    hosts = read_hosts(hostfile) if hostfile else None
    code = launch(list(command), num_workers, num_servers, hosts=hosts, port=port, root_uri=host_ip,
                  timeout=timeout, log=lambda m: click.echo(m, err=True), check_host_keys=not no_host_key_check)
    sys.exit(code)

