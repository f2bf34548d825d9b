"""meshpkt.capture"""
