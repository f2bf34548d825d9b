"""meshpkt.bpf"""
