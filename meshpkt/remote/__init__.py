"""meshpkt.remote: reach a real Swarm cluster over the user's OpenSSH (``ssh`` binary).

Nothing of meshpkt is installed on the nodes: every remote step is a POSIX ``sh`` script sent as the
command of one SSH session (:mod:`meshpkt.remote.scripts`), its output parsed locally.

* :mod:`~meshpkt.remote.target` -- ``[USER@]HOST[:PORT]`` and inventory files (pure).
* :mod:`~meshpkt.remote.ssh` -- the transport: argv for ``ssh``, sessions run concurrently.
* :mod:`~meshpkt.remote.discover` -- namespaces, interfaces, tools, Docker objects of each node.
* :mod:`~meshpkt.remote.taps` -- which hops to tap with which filter, and the topology document (pure).
* :mod:`~meshpkt.remote.capture` -- ``meshpkt capture --node``: tcpdump at every hop of every node.
* :mod:`~meshpkt.remote.collect` -- ``meshpkt collect --node``: rule dumps of every node.
"""

from meshpkt.remote.target import Target, load_inventory, parse_target

__all__ = ["Target", "parse_target", "load_inventory"]
