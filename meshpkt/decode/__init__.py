"""meshpkt.decode"""
