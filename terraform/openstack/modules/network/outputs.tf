output "network_id" {
  description = "The network the course's hosts attach to."
  value       = local.create_network ? openstack_networking_network_v2.course[0].id : data.openstack_networking_network_v2.existing[0].id
}

output "subnet_ready" {
  description = "Set once the course subnet is routed (the router interface exists): floating IPs need it."
  value       = local.create_network ? openstack_networking_router_interface_v2.course[0].id : "existing"
}

output "secgroup_id" {
  description = "The course's security group."
  value       = openstack_networking_secgroup_v2.course.id
}
